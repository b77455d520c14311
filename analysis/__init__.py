"""Results analysis: paper-style tables and figures from the grids' MLflow runs.

paper_numbers.toml + paper.py   the paper's reported numbers and how grid points map to them
runs.py                         MLflow runs of a grid as a pandas DataFrame
gridspec.py, collect.py         what a grid expects (points x seeds) and its runs
stats.py                        mean ± std, Student's t quantile, Welch intervals
tables.py, table_render.py      one table per grid; Markdown, CSV and LaTeX
queue_status.py                 queued / running / failed seeds from the grid queue
excitation_select.py            which blocks, channels and classes the figures show
figures.py, grid_figures.py     the plots, from stats alone or from a grid's runs

analysis reads what senet writes (excitation statistics: senet.excitation.stats); senet's core
never imports analysis.
"""
