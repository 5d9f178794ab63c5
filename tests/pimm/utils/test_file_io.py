"""pimm.utils.file_io: atomic writes leave files with the usual permissions."""
import os
import stat

import numpy as np
import paddle

from pimm.utils import atomic_save, atomic_write_bytes, atomic_write_text, file_io


def test_atomic_writes_give_files_the_mode_of_a_plain_open(tmp_path):
    mask = os.umask(0o027)  # a setting other than the common 022: the files must follow it
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        file_io._new_file_mode.cache_clear()
        atomic_write_text("text", str(tmp_path / "a.txt"))
        atomic_write_bytes(b"bytes", str(tmp_path / "b.bin"))
        atomic_save({"w": paddle.to_tensor(np.ones(3, "float32"))}, str(tmp_path / "c.pdparams"))
    finally:
        os.umask(mask)
        file_io._new_file_mode.cache_clear()
    expected = stat.S_IMODE(plain.stat().st_mode)
    assert expected == 0o640
    for name in ("a.txt", "b.bin", "c.pdparams"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
    assert (tmp_path / "a.txt").read_text() == "text"
