"""watchPatterns: which pushes deploy (gitignore-style patterns from the repository's root). Exact decisions."""

import pytest

from branchyard.watch_patterns import WatchDecision, decide

BASE = "a" * 40


@pytest.mark.parametrize(
    ("patterns", "changed", "base", "expected"),
    [
        ((), ["docs/a.md"], BASE, WatchDecision(True, "no watchPatterns")),
        (("app/**",), ["docs/a.md"], None, WatchDecision(True, "the first deploy of an environment always deploys")),
        (("app/**",), None, BASE, WatchDecision(True, "the files changed since aaaaaaaaaaaa are unknown: deploying")),
        (("app/**",), ["docs/a.md", "app/main.py"], BASE, WatchDecision(True, "app/main.py matches watchPatterns")),
        (("app/**",), ["docs/a.md", "README.md"], BASE, WatchDecision(
            False, 'no deploy: no changed file matches watchPatterns ["app/**"] (docs/a.md, README.md changed since '
                   'aaaaaaaaaaaa)')),
        (("app/**",), [], BASE, WatchDecision(
            False, 'no deploy: no changed file matches watchPatterns ["app/**"] (no file changed since aaaaaaaaaaaa)')),
        # anchored at the repository's root: /app/** is not lib/app/x
        (("/app/**",), ["lib/app/x.py"], BASE, WatchDecision(
            False, 'no deploy: no changed file matches watchPatterns ["/app/**"] (lib/app/x.py changed since '
                   'aaaaaaaaaaaa)')),
        (("/app/**",), ["app/deep/x.py"], BASE, WatchDecision(True, "app/deep/x.py matches watchPatterns")),
        # Railway's examples: TypeScript under src/, Go files at the root only
        (("/src/**/*.ts",), ["src/a/b.ts", "src/a/b.js"], BASE, WatchDecision(True, "src/a/b.ts matches watchPatterns")),
        (("/*.go",), ["cmd/main.go"], BASE, WatchDecision(
            False, 'no deploy: no changed file matches watchPatterns ["/*.go"] (cmd/main.go changed since aaaaaaaaaaaa)')),
        (("/*.go",), ["main.go"], BASE, WatchDecision(True, "main.go matches watchPatterns")),
        # a negation after an including rule: everything but Markdown at the root
        (("**", "!/*.md"), ["README.md"], BASE, WatchDecision(
            False, 'no deploy: no changed file matches watchPatterns ["**", "!/*.md"] (README.md changed since '
                   'aaaaaaaaaaaa)')),
        (("**", "!/*.md"), ["README.md", "docs/x.md"], BASE, WatchDecision(True, "docs/x.md matches watchPatterns")),
        # unanchored: any depth
        (("**/*.py",), ["a/b/c.py", "d.py"], BASE, WatchDecision(True, "a/b/c.py, d.py match watchPatterns")),
        (("*.txt",), [f"f{i}.md" for i in range(7)], BASE, WatchDecision(
            False, 'no deploy: no changed file matches watchPatterns ["*.txt"] (f0.md, f1.md, f2.md, f3.md, f4.md and '
                   '2 more changed since aaaaaaaaaaaa)')),
    ],
)
def test_decide(patterns, changed, base, expected):
    assert decide(patterns, changed, base=base) == expected
