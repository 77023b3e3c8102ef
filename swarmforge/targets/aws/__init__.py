"""The aws target: EC2 instances, their AMIs, the state bucket (see target.py).

Its boto3 clients are made in swarmforge.aws_api, which the state file reader
shares; they are named here too, where the target's modules look for them.
"""

from swarmforge.aws_api import MAX_RETRIES, client, partition_of

__all__ = ["MAX_RETRIES", "client", "partition_of"]
