"""The IBU model: features from the whole beer record, the fixed evaluation protocol, a
registry on S3 and predictions. Submodules import scikit-learn; this one stays light."""
