"""Plain result tables: Markdown for reading, CSV for tools. No dependencies beyond the standard library."""

import csv
import io


def markdown_table(header, rows):
    """A GitHub Markdown table; cells are str()-ed and `|` inside a cell is escaped."""
    def line(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)]) + "\n"


def csv_text(header, rows):
    """The same table as CSV text (header row first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
