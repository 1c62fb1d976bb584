"""The method's algorithms: CAM loss, IR labels, path index and random walk, instances, CRF, image operations."""
