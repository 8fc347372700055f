"""ProducerFunction: on the schedule, puts random beers from the Punk API into Kinesis."""
