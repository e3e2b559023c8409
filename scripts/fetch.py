"""GET a URL through the local router, resolving *.localhost to loopback as browsers do; print the body."""

import sys
import urllib.parse
import urllib.request

url = urllib.parse.urlsplit(sys.argv[1])
target = url._replace(netloc=f"127.0.0.1:{url.port or 80}") if url.hostname.endswith("localhost") else url
request = urllib.request.Request(urllib.parse.urlunsplit(target), headers={"Host": url.netloc})
with urllib.request.urlopen(request, timeout=10) as resp:
    print(resp.status, resp.read().decode())
