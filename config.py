"""pyinfra runs this before it reads the inventory and group_data (and so before any deploy).

It notes where those files are, so that a refusal names the one that gives the bad setting.
"""

from stackdeploy.preflight import check_input_files

check_input_files()
