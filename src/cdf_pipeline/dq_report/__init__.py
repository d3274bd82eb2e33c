"""The data-quality report (``cdf report``): one self-contained HTML file for the people who fix
the data.

``facts`` reads what the lakehouse knows (aggregates and bounded samples, computed in Spark),
``charts`` turns those facts into Vega-Lite specs with Altair, ``page`` renders them into one
HTML file with Jinja2 (the Vega JavaScript inline, so it opens with no network), and ``build``
puts the three together behind the checks that turn bad input into one clear line.
"""
