// @ts-check
// The "Print or save as PDF" button of a printable page: shown only when this script runs,
// it opens the browser's print dialog (where "Save as PDF" is one of the printers).

const button = document.getElementById("print-button");
if (button) {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
}
