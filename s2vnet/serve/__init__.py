"""``s2vnet-serve``: a local web page for automatic segmentation and click-and-refine.

One loaded :class:`~s2vnet.predict.Predictor` behind a small Starlette app (:func:`create_app`); each open
scan is a session with its own cached features, so a click costs decoder passes only. See
:mod:`s2vnet.serve.app` for the endpoints and :mod:`s2vnet.serve.guard` for the security rules.
"""

from s2vnet.serve.app import create_app

__all__ = ["create_app"]
