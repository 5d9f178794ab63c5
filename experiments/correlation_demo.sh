#!/bin/sh
# The correlation study end to end on the synthetic demo data (README: "How well does the
# supernet rank paths?"): Cream's search and the SPOS baseline (PICK_METHOD none, uniform
# sampling) on the demo, NUM_PATHS random paths of the space trained alone for a few epochs, and
# Kendall's tau / Spearman's rho / Pearson's r of each supernet's ranking of them.
#   sh experiments/correlation_demo.sh
# Environment: SEARCH_EPOCHS (default 8, as demo.yaml), STANDALONE_EPOCHS (default 4), NUM_PATHS
# (default 8), WORK (default ./experiments/workspace/correlation_demo). Run from anywhere; a
# second run reuses what the first one finished (AUTO_RESUME).
set -e
cd "$(dirname "$0")/.."
WORK=${WORK:-./experiments/workspace/correlation_demo}
SEARCH_EPOCHS=${SEARCH_EPOCHS:-8}
STANDALONE_EPOCHS=${STANDALONE_EPOCHS:-4}
NUM_PATHS=${NUM_PATHS:-8}
CORRELATION="python tools/main.py correlation experiments/configs/correlation/demo.yaml SAVE_PATH $WORK"

python tools/make_demo_data.py data/demo
python tools/main.py train experiments/configs/train/demo.yaml SAVE_PATH "$WORK" MODEL search_cream \
    EPOCHS "$SEARCH_EPOCHS"
python tools/main.py train experiments/configs/train/demo.yaml SAVE_PATH "$WORK" MODEL search_spos \
    EPOCHS "$SEARCH_EPOCHS" SUPERNET.PICK_METHOD none SUPERNET.HOW_TO_PROB even
# step 1: the paths (drawn inside the FLOPs range) and one retrain command each
$CORRELATION MODEL paths CORRELATION.CHECKPOINT "$WORK/search_cream/last.pdparams" \
    CORRELATION.NUM_PATHS "$NUM_PATHS"
sh "$WORK/paths/retrain_paths.sh" SAVE_PATH "$WORK/standalone" EPOCHS "$STANDALONE_EPOCHS"
# step 2: each supernet's ranking of the same paths against their stand-alone accuracies
for method in cream spos; do
    $CORRELATION MODEL "$method" CORRELATION.CHECKPOINT "$WORK/search_$method/last.pdparams" \
        CORRELATION.RUNS "['$WORK/standalone/paths_path_*']"
done
for method in cream spos; do
    echo "$method: $(cat "$WORK/$method/correlation.json" | tr -d '\n')"
done
