"""Scale-out on one machine: several API and worker processes over one database and Redis."""
