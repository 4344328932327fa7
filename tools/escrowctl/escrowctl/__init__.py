"""escrowctl: the operator and integrator CLI of the escrow platform."""
