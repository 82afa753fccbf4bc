(function(){
var body=document.body,errs=0;
window.addEventListener('error',function(e){errs++;body.setAttribute('data-script-errors',String(errs));});
var D=JSON.parse(document.getElementById('chart-data').textContent);
var W=1100,ops=D.ops,view=[0,Math.max(D.end_ms,1)];
var K=['ok','fail','info'],F=D.fs;
function esc(t){return String(t).replace(/&/g,'&amp;').replace(/</g,'&lt;');}
function bands(x,h){var s='';D.bands.forEach(function(b){if(b[1]<view[0]||b[0]>view[1])return;var a=x(Math.max(b[0],view[0])),c=x(Math.min(b[1],view[1]));s+='<rect class="band" x="'+a.toFixed(1)+'" y="0" width="'+Math.max(c-a,1).toFixed(1)+'" height="'+h+'"><title>'+esc(b[2])+'</title></rect>';});return s;}
function draw(){
var v0=view[0],v1=view[1],span=Math.max(v1-v0,1e-3),x=function(t){return (t-v0)/span*W;};
var inView=[];for(var i=0;i<ops.length;i++){var o=ops[i],e=o[1]<0?D.end_ms:o[1];if(e>=v0&&o[0]<=v1)inView.push(o);}
var step=Math.max(1,Math.ceil(inView.length/D.max_points));
var lanes=Math.max(1,Math.min(D.lanes.length,60)),lh=Math.min(14,Math.max(4,300/lanes)),h=lanes*lh+10;
var p=['<svg class="timeline" width="'+W+'" height="'+h.toFixed(0)+'" xmlns="http://www.w3.org/2000/svg">',bands(x,h)];
for(var j=0;j<inView.length;j+=step){var o=inView[j],e=o[1]<0?D.end_ms:o[1],a=x(Math.max(o[0],v0)),b=x(Math.min(e,v1));
p.push('<rect class="op '+K[o[3]]+'" x="'+a.toFixed(1)+'" y="'+(5+(o[2]%lanes)*lh).toFixed(1)+'" width="'+Math.max(b-a,1).toFixed(1)+'" height="'+Math.max(lh-1,1).toFixed(1)+'"><title>#'+o[4]+' p'+esc(D.lanes[o[2]])+' '+F[o[5]]+' '+esc(JSON.stringify(o[6]))+' '+esc(JSON.stringify(o[7]))+' ('+K[o[3]]+')</title></rect>');}
p.push('</svg>');document.getElementById('timeline').innerHTML=p.join('');
var H=220,maxl=1e-3,pts=[];for(var j=0;j<inView.length;j++){var o=inView[j];if(o[1]>=0&&o[0]>=v0){var l=o[1]-o[0];pts.push(o);if(l>maxl)maxl=l;}}
var lo=Math.log(0.01),hi=Math.log(Math.max(maxl,0.02)),y=function(l){return H-10-(Math.log(Math.max(l,0.01))-lo)/(hi-lo)*(H-20);};
var q=['<svg class="latency" width="'+W+'" height="'+H+'" xmlns="http://www.w3.org/2000/svg">',bands(x,H)];
var ps=Math.max(1,Math.ceil(pts.length/D.max_points));
for(var j=0;j<pts.length;j+=ps){var o=pts[j];q.push('<circle class="pt '+K[o[3]]+'" cx="'+x(o[0]).toFixed(1)+'" cy="'+y(o[1]-o[0]).toFixed(1)+'" r="1.6"/>');}
var nb=100,per=new Array(nb).fill(0);inView.forEach(function(o){if(o[1]>=v0&&o[1]<=v1)per[Math.min(nb-1,Math.floor((o[1]-v0)/span*nb))]++;});
var peak=Math.max.apply(null,per.concat([1])),rate=peak/(span/nb/1000);
q.push('<polyline class="tput" points="'+per.map(function(c,i){return ((i+0.5)/nb*W).toFixed(1)+','+(H-10-c/peak*(H-20)).toFixed(1);}).join(' ')+'"/>');
q.push('<text x="10" y="14" class="axis">latency up to '+maxl.toFixed(1)+' ms (log scale); line: completed ops/s, peak '+rate.toFixed(0)+'</text></svg>');
document.getElementById('latency').innerHTML=q.join('');
document.getElementById('view').textContent='showing '+(v0/1000).toFixed(2)+'–'+(v1/1000).toFixed(2)+' s: '+inView.length+' ops'+(step>1?', one in '+step+' drawn':'');
}
function setView(a,b){var end=Math.max(D.end_ms,1),w=Math.min(Math.max(b-a,1),end);a=Math.max(0,Math.min(a,end-w));view=[a,a+w];draw();}
document.querySelectorAll('[data-nav]').forEach(function(btn){btn.addEventListener('click',function(){var a=view[0],b=view[1],w=b-a,m=(a+b)/2,k=btn.getAttribute('data-nav');
if(k==='all')setView(0,D.end_ms);else if(k==='in')setView(m-w/4,m+w/4);else if(k==='out')setView(m-w,m+w);else if(k==='left')setView(a-w/2,b-w/2);else setView(a+w/2,b+w/2);});});
document.querySelectorAll('.zoomto').forEach(function(el){el.addEventListener('click',function(){setView(+el.getAttribute('data-from'),+el.getAttribute('data-to'));});});
draw();
body.setAttribute('data-draw-ms',performance.now().toFixed(0));
body.setAttribute('data-ready','yes');
})();
