"""What a reader sees: the figures, the HTML report, the committee workbook and the ``stress-report`` command.

Imports: every room below it (config, model, engine, results) and stress.errors; never stress.analysis.
"""
