"""Tables a person can sort, filter and page through, for pages with hundreds of classes.

    rows = [{"class": name, "accuracy": 0.91, "LogLoss": 0.31, "images": gallery.thumbs(...)}, ...]
    html.page("Errors", tables.sortable_table(rows, ["class", "accuracy", "LogLoss", "images"], page_size=50))

The rows are all in the page (so Ctrl+F and a saved copy still find everything); one small inline script
(`SCRIPT`, added by `html.page` to any page holding such a table) sorts a column on a click on its heading
(numbers by value), filters rows on typed text and shows `page_size` rows at a time. Without JavaScript the
table is simply shown whole. Numbers are shown with `decimals` digits but sorted by their full value.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from finegrain.reports.markup import Markup, cell

__all__ = ["SCRIPT", "sortable_table"]

# Kept short and dependency-free: the KFP UI shows pages in a sandboxed frame with no network.
SCRIPT = """
(function(){
function key(td){var v=td.getAttribute('data-v');if(v!==null)return [0,parseFloat(v)];
var t=td.textContent.trim(),n=Number(t);return (t!==''&&isFinite(n))?[0,n]:[1,t.toLowerCase()];}
function cmp(a,b){if(a[0]!==b[0])return a[0]-b[0];return a[1]<b[1]?-1:(a[1]>b[1]?1:0);}
document.querySelectorAll('table.fg-table').forEach(function(tb){
var body=tb.tBodies[0],rows=Array.prototype.slice.call(body.rows),shown=rows,page=0;
var size=parseInt(tb.getAttribute('data-page')||'0',10),col=-1,dir=1;
var bar=document.createElement('div');bar.className='fg-pager';
var q=document.createElement('input');q.type='search';q.placeholder='filter rows';
var prev=document.createElement('button');prev.textContent='<';
var next=document.createElement('button');next.textContent='>';
var info=document.createElement('span');
bar.appendChild(q);bar.appendChild(prev);bar.appendChild(next);bar.appendChild(info);
tb.parentNode.insertBefore(bar,tb);
function draw(){var pages=size?Math.max(1,Math.ceil(shown.length/size)):1;if(page>pages-1)page=pages-1;
rows.forEach(function(r){r.style.display='none';});
shown.forEach(function(r,i){body.appendChild(r);
if(!size||(i>=page*size&&i<(page+1)*size))r.style.display='';});
info.textContent=' '+shown.length+' of '+rows.length+' rows'+(pages>1?', page '+(page+1)+' of '+pages:'');
prev.disabled=page<=0;next.disabled=page>=pages-1;}
function filter(){var t=q.value.trim().toLowerCase();
shown=t?rows.filter(function(r){return r.textContent.toLowerCase().indexOf(t)>=0;}):rows.slice();}
q.addEventListener('input',function(){filter();page=0;draw();});
prev.addEventListener('click',function(){page--;draw();});
next.addEventListener('click',function(){page++;draw();});
Array.prototype.forEach.call(tb.tHead.rows[0].cells,function(th,i){th.className='fg-sort';
th.title='sort by this column';th.addEventListener('click',function(){dir=(col===i)?-dir:1;col=i;
rows.sort(function(a,b){return dir*cmp(key(a.cells[i]),key(b.cells[i]));});filter();page=0;draw();});});
draw();});
})();
"""


def _td(value: Any, decimals: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{cell(value)}</td>"
    if isinstance(value, float) and not math.isfinite(value):
        return f"<td>{value}</td>"
    shown = f"{value:.{decimals}f}" if isinstance(value, float) else str(value)
    return f"<td data-v='{value!r}'>{shown}</td>"


def sortable_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    page_size: int = 0,
    decimals: int = 4,
    caption: str = "",
) -> Markup:
    """A table sortable by any column, with a filter box; `page_size` > 0 shows that many rows at a time.

    Cells are escaped unless they are `Markup` (thumbnails); float cells show `decimals` digits, sort exactly.
    """
    head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_td(row.get(c, ""), decimals) for c in columns) + "</tr>" for row in rows)
    cap = f"<caption>{_html.escape(caption)}</caption>" if caption else ""
    return Markup(
        f"<table class='fg-table' data-page='{int(page_size)}'>{cap}<thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )
