"""brewops: Punk API beers through Kinesis, Firehose, S3 and Glue to an IBU model.

Kept import-light on purpose: the Lambda handlers import this package, and their
deployment packages must not pull in pandas or scikit-learn.
"""

__version__ = "0.1.0"
