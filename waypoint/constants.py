"""Reserved names shared by every layer."""

START = "__start__"
END = "__end__"
INTERRUPT = "__interrupt__"

# Internal channel names used in pending writes; never valid as state keys.
GOTO = "__goto__"
SEND = "__send__"
ERROR = "__error__"
RESUME = "__resume__"
RESULT = "__result__"
NO_WRITES = "__no_writes__"

RESERVED = frozenset({START, END, INTERRUPT, GOTO, SEND, ERROR, RESUME, RESULT, NO_WRITES})

DEFAULT_RECURSION_LIMIT = 10_000
NS_SEP = "|"
