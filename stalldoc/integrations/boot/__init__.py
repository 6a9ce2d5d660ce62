"""Put on the child's PYTHONPATH by ``stalldoc run``; see ``sitecustomize.py``. Never imported as a package."""
