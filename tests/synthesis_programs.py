"""Small programs, one per language, that give every mutation operator something to change.

Each is (prompt, solution): the prompt holds the signature (never mutated), the solution the
body. ``count_pairs(values, limit)`` counts values below ``limit`` in a fixed window and uses
every construct the operators look for: a relational loop bound, an if/else, arithmetic, a
logical ``and``, a two-argument call, a removable statement and boolean/integer returns.
"""

PROGRAMS: dict[str, tuple[str, str]] = {
    "Python": (
        "def pick(first, second):\n    return first\n\n\ndef count_pairs(values, limit):\n",
        "    total = 0\n"
        "    steps = 0\n"
        "    for index in range(len(values)):\n"
        "        if values[index] < limit and index >= 1:\n"
        "            total += pick(values[index], limit) * 2\n"
        "        else:\n"
        "            total -= 1\n"
        "        steps += 1\n"
        "    if total > 100:\n"
        "        return False\n"
        "    return total\n",
    ),
    "Ruby": (
        "def pick(first, second)\n  first\nend\n\ndef count_pairs(values, limit)\n",
        "  total = 0\n"
        "  steps = 0\n"
        "  (0...values.length).each do |index|\n"
        "    if values[index] < limit && index >= 1\n"
        "      total += pick(values[index], limit) * 2\n"
        "    else\n"
        "      total -= 1\n"
        "    end\n"
        "    steps += 1\n"
        "  end\n"
        "  return false if total > 100\n"
        "  total\n"
        "end\n",
    ),
    "JavaScript": (
        "function pick(first, second) {\n  return first;\n}\n\nfunction countPairs(values, limit) {\n",
        "  let total = 0;\n"
        "  let steps = 0;\n"
        "  for (let index = 0; index < values.length; index++) {\n"
        "    if (values[index] < limit && index >= 1) {\n"
        "      total += pick(values[index], limit) * 2;\n"
        "    } else {\n"
        "      total -= 1;\n"
        "    }\n"
        "    steps += 1;\n"
        "  }\n"
        "  if (total > 100) {\n"
        "    return false;\n"
        "  }\n"
        "  return total;\n"
        "}\n",
    ),
    "C": (
        "int pick(int first, int second) { return first; }\n\n"
        "int count_pairs(const int *values, int size, int limit) {\n",
        "    int total = 0;\n"
        "    int steps = 0;\n"
        "    for (int index = 0; index < size; index++) {\n"
        "        if (values[index] < limit && index >= 1) {\n"
        "            total += pick(values[index], limit) * 2;\n"
        "        } else {\n"
        "            total -= 1;\n"
        "        }\n"
        "        steps += 1;\n"
        "    }\n"
        "    if (total > 100) {\n"
        "        return 0;\n"
        "    }\n"
        "    return total;\n"
        "}\n",
    ),
    "C++": (
        "#include <vector>\nint pick(int first, int second) { return first; }\n\n"
        "int count_pairs(const std::vector<int>& values, int limit) {\n",
        "    int total = 0;\n"
        "    int steps = 0;\n"
        "    for (int index = 0; index < (int)values.size(); index++) {\n"
        "        if (values[index] < limit && index >= 1) {\n"
        "            total += pick(values[index], limit) * 2;\n"
        "        } else {\n"
        "            total -= 1;\n"
        "        }\n"
        "        steps += 1;\n"
        "    }\n"
        "    if (total > 100) {\n"
        "        return 0;\n"
        "    }\n"
        "    return total;\n"
        "}\n",
    ),
    "Java": (
        "class Counter {\n    static int pick(int first, int second) { return first; }\n\n"
        "    static int countPairs(int[] values, int limit) {\n",
        "        int total = 0;\n"
        "        int steps = 0;\n"
        "        for (int index = 0; index < values.length; index++) {\n"
        "            if (values[index] < limit && index >= 1) {\n"
        "                total += pick(values[index], limit) * 2;\n"
        "            } else {\n"
        "                total -= 1;\n"
        "            }\n"
        "            steps += 1;\n"
        "        }\n"
        "        if (total > 100) {\n"
        "            return 0;\n"
        "        }\n"
        "        return total;\n"
        "    }\n"
        "}\n",
    ),
    "C#": (
        "class Counter {\n    static int Pick(int first, int second) { return first; }\n\n"
        "    static int CountPairs(int[] values, int limit) {\n",
        "        int total = 0;\n"
        "        int steps = 0;\n"
        "        for (int index = 0; index < values.Length; index++) {\n"
        "            if (values[index] < limit && index >= 1) {\n"
        "                total += Pick(values[index], limit) * 2;\n"
        "            } else {\n"
        "                total -= 1;\n"
        "            }\n"
        "            steps += 1;\n"
        "        }\n"
        "        if (total > 100) {\n"
        "            return 0;\n"
        "        }\n"
        "        return total;\n"
        "    }\n"
        "}\n",
    ),
    "Go": (
        "package main\n\nfunc pick(first int, second int) int { return first }\n\n"
        "func countPairs(values []int, limit int) int {\n",
        "\ttotal := 0\n"
        "\tsteps := 0\n"
        "\tfor index := 0; index < len(values); index++ {\n"
        "\t\tif values[index] < limit && index >= 1 {\n"
        "\t\t\ttotal += pick(values[index], limit) * 2\n"
        "\t\t} else {\n"
        "\t\t\ttotal -= 1\n"
        "\t\t}\n"
        "\t\tsteps += 1\n"
        "\t}\n"
        "\tif total > 100 {\n"
        "\t\treturn 0\n"
        "\t}\n"
        "\treturn total + steps*0\n"
        "}\n",
    ),
}
