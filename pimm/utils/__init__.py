"""Training utilities: checkpoints, EMA, metrics, logging, distributed and runtime helpers."""
from .checkpoint_saver import CHECKPOINT_VERSION, CheckpointSaver, NonFiniteStateError
from .distributed import (barrier, get_rank, get_world_size, init_distributed, is_primary,
                          reduce_tensor)
from .file_io import (atomic_link, atomic_save, atomic_write_bytes, atomic_write_text, is_disk_full,
                      remove_stale_temp_files)
from .log import get_outdir, setup_logger
from .metrics import AverageMeter, accuracy
from .model_ema import ModelEma, check_state_fits, unwrap_model
from .options import REQUIRED, read_options, to_plain_dict
from .profile import PTFLOPS_RULES, count_parameters, format_count, profile
from .run_lock import RunFolderBusyError, RunLock
from .runtime import (available_cpus, cpu_info, get_num_threads, get_rng_state, retain_freed_memory,
                      seed_everything, select_mkl_kernels, set_num_threads, set_rng_state)
from .summary import SUMMARY_FILE, update_summary

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointSaver",
    "NonFiniteStateError",
    "ModelEma",
    "unwrap_model",
    "check_state_fits",
    "AverageMeter",
    "accuracy",
    "reduce_tensor",
    "SUMMARY_FILE",
    "update_summary",
    "setup_logger",
    "get_outdir",
    "init_distributed",
    "get_rank",
    "get_world_size",
    "is_primary",
    "barrier",
    "available_cpus",
    "cpu_info",
    "set_num_threads",
    "get_num_threads",
    "retain_freed_memory",
    "select_mkl_kernels",
    "seed_everything",
    "get_rng_state",
    "set_rng_state",
    "atomic_save",
    "atomic_link",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_temp_files",
    "is_disk_full",
    "RunLock",
    "RunFolderBusyError",
    "REQUIRED",
    "read_options",
    "to_plain_dict",
    "profile",
    "PTFLOPS_RULES",
    "count_parameters",
    "format_count",
]
