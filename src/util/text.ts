/**
 * Whether `s` has more than `max` characters, counted as JSON Schema's maxLength and the spec count
 * them: code points, so an emoji is one character, not the two UTF-16 units of `s.length`.
 */
export function longerThan(s: string, max: number): boolean {
  if (s.length <= max) return false;
  if (s.length > 2 * max) return true;
  let characters = 0;
  for (const _ of s) if (++characters > max) return true;
  return false;
}

/** C0 and C1 control characters (and DEL): never part of an id or a name. */
export const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;
