"""Host-side cloud tools: SageMaker training jobs and endpoints by image URI (launch), their
cost estimates (pricing), and the Lambda function that calls an endpoint (endpoint_lambda).

Nothing here imports torch: these run on a laptop or in CI with boto3 only.
"""
