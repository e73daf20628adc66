"""webbflow: the JWST science calibration pipeline as Prefect workflows."""

__version__ = "0.1.0"
