"""Reports: sample grids and (later) HTML reports and plots."""
