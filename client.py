import asyncio, sys
sys.path.insert(0, "/work/wt/perf/tests/bench")
from submit import submit
n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
r = asyncio.run(submit("127.0.0.1", 2600, count=n, size=10240, connections=4))
print(r.summary())
