"""The shop owner's cockpit in the Django admin, in one place.

``dashboard`` (model versions, online metrics, experiments, the dashboard page),
``merch`` (rules with a preview, similar-items judgements, the visual health page),
``runs`` (background task runs and their progress), ``health`` (catalogue visual health
queries), ``taskruns`` (recording a run's progress), ``charts`` (inline SVG charts) and
``online_metrics`` (impressions, clicks, conversions). The admin registers them on import
(``recommendations.admin``); they call the bridge (serving, training, embedding).
"""
