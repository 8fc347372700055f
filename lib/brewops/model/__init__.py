"""The IBU model: features from the whole beer record, the fixed evaluation protocol, a
registry on S3 and predictions. Submodules import scikit-learn; this one stays light."""

# The fixed protocol's seed (folds, baselines, importance), here so the command line can show
# it without importing scikit-learn.
PROTOCOL_SEED = 20240601
# numpy's random generators take seeds from 0 to this
MAX_SEED = 2**32 - 1
