"""The production loop around the service: the offline gate (``gate``), the A/B read-out
(``abtest``), the readers of the service's logs (``logs``) and the simulated loop (``simulate``).
README "The production loop"."""

Z95 = 1.959963984540054  # the two-sided 95% quantile of the normal distribution
