"""The warnings one thread raises inside a block, collected for that thread alone and never printed.

``warnings.catch_warnings`` swaps process-wide state (the filter list, ``showwarning``) on entry and puts it
back on exit, so on Python 3.11 two threads inside it at once record each other's warnings, swallow a third
thread's, or print them once one thread has put back the state the other replaced. The DirectRunner and
tf.data decode in several threads at once.

Here the process-wide state changes once: one filter at the front of ``warnings.filters``. Python tests a
warning against a filter with ``issubclass(warning's class, filter's category)``; this filter's category is an
object that answers by noting the class name in the asking thread's list and saying yes there (action
"ignore": nothing printed), and no in every thread that is not collecting, where the filters after it decide
as they would without it. A block costs a thread-local swap and one identity check.

Python skips a warning it has already shown from the same line with the same text before it reads any filter
(the module's ``__warningregistry__``), so such a repeat is not collected either; in aeops every decode is.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_thread = threading.local()
_installing = threading.Lock()


class _EveryWarningInACollectingThread:
    """The filter's category (see the module docstring). Only its ``__subclasscheck__`` is ever called."""

    def __subclasscheck__(self, category: type) -> bool:
        names = getattr(_thread, "names", None)
        if names is None:
            return False
        names.append(category.__name__)
        return True


_FILTER = ("ignore", None, _EveryWarningInACollectingThread(), None, 0)


@contextmanager
def collected() -> Iterator[list[str]]:
    """The class names of the warnings this thread raises inside the block, in order; none is printed."""
    if not warnings.filters or warnings.filters[0] is not _FILTER:
        _put_filter_first()
    outer = getattr(_thread, "names", None)
    _thread.names = names = []
    try:
        yield names
    finally:
        _thread.names = outer


def _put_filter_first() -> None:
    """On first use, and after a filter was added before it (pytest adds its own for each test)."""
    with _installing:
        filters = warnings.filters
        if filters and filters[0] is _FILTER:
            return
        filters.insert(0, _FILTER)  # in front before an older copy goes: no instant without it
        if _FILTER in filters[1:]:
            del filters[filters.index(_FILTER, 1)]
        warnings._filters_mutated()  # what warnings.filterwarnings does after changing the list
