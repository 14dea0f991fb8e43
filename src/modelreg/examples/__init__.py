"""Example training code, written the way users write it: plain MLflow, no modelreg imports."""
