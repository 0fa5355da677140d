"""Remote signing service: the Cloud Signature Consortium API v2 under ``/csc/v2/``."""
