"""The naming rule shared by the dataset registry and the model store."""

import re

# Lowercase letters, digits, '.', '_' and '-', at most 128 characters, starting with a letter or digit.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
