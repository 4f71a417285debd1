"""The dashboard's build (dashboard/ → `npm run build`), served by Kestrel at /app/."""
