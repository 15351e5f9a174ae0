import { z } from "zod";

// How answers write dates and instants; the document declares them as `format: date` and
// `format: date-time`, so a generated client reads them as such, and the serializer holds every
// answer to them.

/** A calendar date, YYYY-MM-DD. */
export const isoDate = z.iso.date();
/** An instant in UTC as Date.toISOString writes it (RFC 3339 with Z). */
export const isoInstant = z.iso.datetime();
