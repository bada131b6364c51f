// Three ways to choose a photo: the file picker, dropping it on the drop zone, and pasting it (Ctrl+V).
// Nothing is judged here: the server decides what is an acceptable image and says why it is not.

export function bindPicker({ input, dropzone, onFile }) {
  input.addEventListener("change", () => {
    const [file] = input.files;
    if (file) onFile(file);
    input.value = ""; // so that choosing the same file again is still a change
  });

  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (e) => {
      e.preventDefault();
      dropzone.classList.add("is-dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    dropzone.addEventListener(type, () => dropzone.classList.remove("is-dragging"));
  }
  dropzone.addEventListener("drop", (e) => {
    const [file] = e.dataTransfer.files;
    if (file) onFile(file);
  });
  // A photo dropped beside the zone would otherwise make the browser leave the page to show it.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());

  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
    if (!file) return;
    e.preventDefault();
    onFile(file.name ? file : new File([file], "pasted-photo.png", { type: file.type }));
  });
}
