"""DataModules, one module per data source; Hydra imports only the one a run names."""
