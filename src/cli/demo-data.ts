import { dayToDate } from "../activation/periods.js";
import { mulberry32 } from "../util/prng.js";

/** The demo data is the same on every machine. */
export const prng = mulberry32;

export interface DemoUserDays {
  userId: string;
  /** Days (integers) the user opened the app. */
  days: number[];
}

/**
 * Synthetic users of a marketplace app over [firstDay, lastDay]: they join over time and behave like
 * daily regulars, weekly visitors, early churners, or lapsers who come back after weeks away.
 */
export function demoPopulation(users: number, firstDay: number, lastDay: number, seed = 7): DemoUserDays[] {
  const rnd = prng(seed);
  const span = lastDay - firstDay + 1;
  const out: DemoUserDays[] = [];
  for (let u = 0; u < users; u++) {
    const kind = rnd();
    // Earlier cohorts are bigger: the app grew, then kept acquiring users.
    const join = firstDay + Math.floor(Math.pow(rnd(), 1.3) * span);
    const days: number[] = [];
    let p: number;
    let stopAt = lastDay + 1;
    let pauseFrom = Infinity, pauseTo = -Infinity;
    if (kind < 0.2) p = 0.85; // regulars
    else if (kind < 0.55) p = 0.3; // weekly-ish
    else if (kind < 0.8) {
      p = 0.6; // early churners: a burst, then gone
      stopAt = join + 1 + Math.floor(rnd() * 10);
    } else {
      p = 0.55; // lapsers who return
      pauseFrom = join + 5 + Math.floor(rnd() * 20);
      pauseTo = pauseFrom + 7 + Math.floor(rnd() * 35);
    }
    for (let d = join; d <= lastDay && d < stopAt; d++) {
      if (d === join || (!(d >= pauseFrom && d <= pauseTo) && rnd() < p * (0.9 + 0.2 * Math.sin((d % 7) / 7 * 2 * Math.PI)))) days.push(d);
    }
    out.push({ userId: `user-${(u + 1).toString().padStart(6, "0")}@demo`, days });
  }
  return out;
}

/** Events for one day of a user, at plausible local hours, written with the +09:00 offset (Seoul). */
export function eventsForDay(rnd: () => number, userId: string, day: number, count: number): Array<{ user_id: string; occurred_at: string }> {
  const out = [];
  for (let i = 0; i < count; i++) {
    const minutes = Math.floor(7 * 60 + rnd() * 17 * 60); // 07:00–24:00 local
    const h = Math.floor(minutes / 60) % 24, m = minutes % 60, s = Math.floor(rnd() * 60);
    const pad = (n: number) => n.toString().padStart(2, "0");
    out.push({ user_id: userId, occurred_at: `${dayToDate(day)}T${pad(h)}:${pad(m)}:${pad(s)}+09:00` });
  }
  return out;
}
