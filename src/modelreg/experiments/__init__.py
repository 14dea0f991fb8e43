"""A/B experiments on registry versions: pure rules (assignment now; statistics and state next)."""
