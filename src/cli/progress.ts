/** A one-line progress bar on a TTY (stderr); silent otherwise so piped output stays clean. */
export class ProgressBar {
  private last = 0;
  private readonly tty = Boolean(process.stderr.isTTY);
  constructor(private readonly label: string) {}

  update(fraction: number, note = "") {
    if (!this.tty) return;
    const now = Date.now();
    if (now - this.last < 100 && fraction < 1) return;
    this.last = now;
    const width = 30;
    const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
    process.stderr.write(`\r${this.label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${note}`.padEnd(100));
  }

  done() {
    if (this.tty) process.stderr.write("\n");
  }
}
