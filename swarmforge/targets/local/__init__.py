"""The local sandbox: swarm nodes as network namespaces on this machine.

Each host is a network namespace on a private bridge with its own hostname,
``dockerd`` and ``sshd``; Terraform creates and destroys hosts through the
``sandbox`` command (see ``__main__``), the way EC2 creates instances on aws.
"""
