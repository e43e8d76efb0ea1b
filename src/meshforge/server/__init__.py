"""The live control plane: snapshot cache, ADS (state of the world and delta), file watch, admin HTTP."""
