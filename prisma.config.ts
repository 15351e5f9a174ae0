import { defineConfig, env } from "prisma/config";

// env() makes `prisma generate` fail loudly when DATABASE_URL is unset instead of guessing a database.
export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: env("DATABASE_URL") },
});
