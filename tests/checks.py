"""What the Python checks share: a tally of named checks, and a free port."""

import socket


class Checks:
    """Call with a name, a truth and a detail to show when it is false."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def __call__(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}")
            if detail:
                print("     " + str(detail)[:2000].replace("\n", "\n     "))

    def summary(self, label):
        """Prints `label: N passed, M failed` and returns the exit status."""
        print(f"{label}: {self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
