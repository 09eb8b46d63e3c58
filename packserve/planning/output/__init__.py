"""What planning writes for people and clusters: Kubernetes manifests and autoscaling, the
markdown report and plots. Reads plans (and the capacity model's results); measures nothing.
"""
