"""Host-side cloud tools, never installed in the images: `byoc-cloud` (SageMaker training jobs
and endpoints by image URI), its cost estimates (pricing, prices.json), and the Lambda function
that calls an endpoint (endpoint_lambda).

Nothing here imports torch: these run on a laptop or in CI with boto3 only. What they share
with the images (hyperparameter encoding, content types, top-k) is byoc.contract.
"""
