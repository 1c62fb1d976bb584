"""Metrics: semantic mIoU, instance AP, COCO JSON, WSOL boxes and accuracies."""
