// Rate and see: search titles, rate them, show the folded-in answer. Plain DOM calls, no framework; a failed
// call becomes the page's message, never an uncaught exception.
const rated=new Map();let timer=null;
function show(text){let m=document.getElementById('message');if(!text){if(m)m.remove();return;}
 if(!m){m=document.createElement('div');m.id='message';m.setAttribute('role','alert');
 document.querySelector('main').prepend(m);}m.textContent=text;}
async function call(url,options){try{const r=await fetch(url,options);const body=await r.json();
 if(body.error){show(body.error);return null;}show(null);return body;}
 catch(e){show('the app is not answering: try again');return null;}}
function li(html){const e=document.createElement('li');e.innerHTML=html;return e;}
function esc(t){const d=document.createElement('div');d.textContent=t;return d.innerHTML;}
async function search(){const q=document.getElementById('search').value.trim();const list=document.getElementById('results');
 if(q.length<2){list.replaceChildren();return;}const body=await call('/api/search?'+new URLSearchParams({q}));if(!body)return;
 list.replaceChildren(...body.movies.map(m=>{const e=li('<span class="title">'+esc(m.title)+'</span> <select>'+STARS+
 '</select><button type="button">Rate</button>');e.dataset.movieId=m.movie_id;
 e.querySelector('button').onclick=()=>{rated.set(m.movie_id,{title:m.title,rating:parseFloat(e.querySelector('select').value)});
 drawRated();recommend();};return e;}));}
function drawRated(){document.getElementById('rated').replaceChildren(...[...rated].map(([id,r])=>{
 const e=li(esc(r.title)+' <b>'+r.rating+'</b> <button type="button">remove</button>');e.dataset.movieId=id;
 e.querySelector('button').onclick=()=>{rated.delete(id);drawRated();recommend();};return e;}));}
function body(){return JSON.stringify({ratings:Object.fromEntries([...rated].map(([id,r])=>[id,r.rating]))});}
async function save(){if(!rated.size)return;const answer=document.getElementById('answer');
 const b=await call('/api/save',{method:'POST',headers:{'Content-Type':'application/json'},body:body()});
 if(b){answer.innerHTML=b.html;rated.clear();drawRated();document.getElementById('save').disabled=true;}}
document.getElementById('save').addEventListener('click',save);
async function recommend(){const answer=document.getElementById('answer');
 document.getElementById('save').disabled=!rated.size;if(!rated.size){answer.replaceChildren();return;}
 const ratings=Object.fromEntries([...rated].map(([id,r])=>[id,r.rating]));
 const body=await call('/api/rate',{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify({ratings})});
 if(body)answer.innerHTML=body.html;}
document.getElementById('search').addEventListener('input',()=>{clearTimeout(timer);timer=setTimeout(search,150);});
