"""ECR for the byoc images: repositories, push, and the scan gate (`python -m ecr --help`).

Talks to ECR through boto3 and to the registry through the Docker engine, so
the same code runs against AWS and against loopback stand-ins (moto's server
for the ECR API, Debian's docker-registry for the pushes; see standins.py).
"""
