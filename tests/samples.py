"""Small real programs, each in a buggy or slow version and its fix, shared by the tests."""

STATS_V1 = """def mean(values):
    total = 0
    for value in values:
        total += value
    return total / len(values) - 1
"""
STATS_V2 = STATS_V1.replace(" - 1\n", "\n")
STATS_V3 = STATS_V2.replace("    total = 0\n    for value in values:\n        total += value\n",
                            "    total = sum(values)\n")
GO_V1 = """package main

func Find(items []string, target string) int {
	for i := 0; i <= len(items)-1; i++ {
		if items[i] == target {
			return i
		}
	}
	return 0
}
"""
GO_V2 = GO_V1.replace("return 0", "return -1")
JS_V1 = """function join(parts) {
  let out = "";
  for (const part of parts) {
    out = out + part + ",";
  }
  return out;
}
module.exports = { join };
"""
JS_V2 = JS_V1.replace("""  let out = "";
  for (const part of parts) {
    out = out + part + ",";
  }
  return out;""", """  return parts.join(",");""")


def commit_stats_history(repo) -> None:
    """Three commits of ``stats.py`` in ``repo`` (a tests.conftest.GitRepo): add, fix, speed up."""
    repo.commit("Add statistics helpers", {"stats.py": STATS_V1})
    repo.commit("Fix bug: mean was off by one", {"stats.py": STATS_V2})
    repo.commit("Speed up mean with the builtin sum", {"stats.py": STATS_V3})
