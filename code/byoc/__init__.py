"""Bring-your-own-container kit for PyTorch image classification on SageMaker."""
