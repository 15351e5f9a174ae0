import type { Page } from "../api";
import { useFetch } from "../data";
import { ErrorMessage, Link, Loading, TableScroll, useTitle } from "../ui";
import type { Audience } from "../types";

export function AudienceList() {
  const list = useFetch<Page<Audience>>("/v1/audiences?limit=200");
  useTitle("Audiences");
  return (
    <>
      <div class="row spread">
        <h1>Audiences</h1>
        <Link href="/audiences/new" class="button primary">
          New audience
        </Link>
      </div>
      <ErrorMessage error={list.error} />
      {list.loading && <Loading what="audiences" />}
      {list.data && list.data.data.length === 0 && <p>No audiences yet.</p>}
      {list.data && list.data.data.length > 0 && (
        <TableScroll label="Audiences">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Fact</th>
                <th scope="col">Grain</th>
                <th scope="col">Version</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {list.data.data.map((a) => (
                <tr key={a.id}>
                  <td>
                    <Link href={`/audiences/${a.id}`}>{a.name}</Link>
                  </td>
                  <td>{a.fact}</td>
                  <td>{a.grain}</td>
                  <td>{a.version}</td>
                  <td>{new Date(a.updated_at).toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      )}
    </>
  );
}
