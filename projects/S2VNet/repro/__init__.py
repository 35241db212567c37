"""The S2VNet paper reproduction kit (``projects/S2VNet/reproduce.py``): data checks, Tables 1-4, Fig. 5-6.

Modules: ``paper`` (the published numbers, each with its table or figure), ``datasets`` (configs, catalog
names and splits per dataset), ``synthetic`` (small datasets in the public folder layouts), ``check_data``,
``runs`` (the models and evaluations a result needs, their commands and folders), ``results`` (numbers read
from ``metrics.json``), ``markdown``, one module per result (``tables``, ``ablation``, ``convergence``,
``unified``) and ``speed`` (seconds per iteration and GPU memory of a training, for the GPU script).
"""
