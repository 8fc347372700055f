"""TransformFunction: the Firehose data-transformation Lambda of the cleaned delivery stream."""
