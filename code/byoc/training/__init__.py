"""Training: run by sagemaker-training's `train` (SAGEMAKER_TRAINING_MODULE=byoc.training.main:main)."""
